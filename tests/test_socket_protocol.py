"""What a tab may send on its socket: a resync request, and nothing else, at most 4 KB."""

from __future__ import annotations

import json
import logging

import pytest
from asgiref.sync import sync_to_async

from chat import services, socket_protocol
from chat.models import Message
from chat.socket_protocol import (
    CLOSE_MALFORMED,
    CLOSE_NOT_TEXT,
    CLOSE_TOO_BIG,
    MAX_MESSAGE_BYTES,
    Malformed,
    Resync,
    TooBig,
    parse,
)
from tests.sockets import closed_with, socket_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def conversation(user):
    return services.conversation_create(owner=user)


def test_a_resync_with_htmx_headers_is_a_resync_request():
    text = json.dumps({"resync": 12, "HEADERS": {"HX-Request": "true"}})
    assert parse(text_data=text, bytes_data=None) == Resync(12)


def test_the_size_is_checked_before_the_text_is_parsed(monkeypatch):
    def no_parse(*args, **kwargs):
        raise AssertionError("parsed")

    monkeypatch.setattr("chat.socket_protocol.json.loads", no_parse)
    with pytest.raises(TooBig):
        parse(text_data="[" * (MAX_MESSAGE_BYTES + 1), bytes_data=None)
    # Characters are not bytes: 2,000 'é' are 4,000 bytes in UTF-8.
    with pytest.raises(TooBig):
        parse(text_data='"' + "é" * 2100 + '"', bytes_data=None)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "",
        "[" * 4000,
        '{"resync": ' + "[" * 2000 + "]" * 2000 + "}",
        '{"resync": "12"}',
        '{"resync": 1.5}',
        '{"resync": true}',
        '{"resync": 0}',
        '{"resync": -3}',
        '{"resync": 99999999999999999999999}',
        '{"resync": null}',
        "[12]",
        "12",
        '{"resync": 1, "other": 2}',
        '{"resync": 1, "HEADERS": "x"}',
        '{"HEADERS": {}}',
    ],
)
def test_anything_else_is_malformed(text):
    assert len(text.encode()) <= MAX_MESSAGE_BYTES
    with pytest.raises(Malformed):
        parse(text_data=text, bytes_data=None)


async def test_a_message_over_the_limit_closes_the_socket_with_1009(conversation, alice_session):
    comm = socket_for(conversation.pk, alice_session)
    assert (await comm.connect())[0]
    await comm.send_to(text_data=json.dumps({"resync": 1, "HEADERS": {"x": "a" * 5000}}))
    assert await closed_with(comm) == CLOSE_TOO_BIG
    await comm.disconnect()


async def test_deeply_nested_json_closes_the_socket_without_a_traceback(
    conversation, alice_session, caplog
):
    comm = socket_for(conversation.pk, alice_session)
    assert (await comm.connect())[0]
    with caplog.at_level(logging.DEBUG):
        await comm.send_to(text_data='{"resync": ' + "[" * 2000 + "]" * 2000 + "}")
        assert await closed_with(comm) == CLOSE_MALFORMED
    await comm.disconnect()
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]


@pytest.mark.parametrize("text", ["hello", '{"resync": "1"}', '{"resync": 1, "x": 1}', "[]"])
async def test_a_malformed_message_closes_the_socket_with_4400(conversation, alice_session, text):
    comm = socket_for(conversation.pk, alice_session)
    assert (await comm.connect())[0]
    await comm.send_to(text_data=text)
    assert await closed_with(comm) == CLOSE_MALFORMED
    await comm.disconnect()


async def test_a_binary_frame_closes_the_socket_with_1003(conversation, alice_session):
    comm = socket_for(conversation.pk, alice_session)
    assert (await comm.connect())[0]
    await comm.send_to(bytes_data=b'{"resync": 1}')
    assert await closed_with(comm) == CLOSE_NOT_TEXT
    await comm.disconnect()


async def test_a_well_formed_resync_is_still_answered(conversation, alice_session, sent_to_worker):
    _, reply = await sync_to_async(services.message_submit)(conversation=conversation, content="hi")
    await Message.objects.filter(pk=reply.pk).aupdate(status=Message.Status.COMPLETE)
    comm = socket_for(conversation.pk, alice_session)
    assert (await comm.connect())[0]
    await comm.send_to(
        text_data=json.dumps({"resync": reply.pk, "HEADERS": {"HX-Request": "true"}})
    )
    assert f'<article id="m{reply.pk}"' in await comm.receive_from()
    await comm.disconnect()


def test_a_tab_name_is_a_few_letters_and_digits_or_nothing():
    assert socket_protocol.tab_name("k3x9q") == "k3x9q"
    for odd in (None, "", "A-B", "x" * 21, "tab name", "<b>", "k3x9q\n"):
        assert socket_protocol.tab_name(odd) == "", odd
