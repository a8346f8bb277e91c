"""Markdown from the model is rendered without any way to run script or reach another host."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from chat.flanking import cjk_friendly
from chat.markdown import _clean, render_markdown


def test_raw_html_is_shown_as_text():
    html = render_markdown("<script>alert(1)</script><img src=x onerror=alert(1)>")
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html


def test_javascript_links_are_not_links():
    html = render_markdown("[x](javascript:alert(1)) [y](vbscript:msgbox) [z](data:text/html,hi)")
    assert "href" not in html


def test_images_from_other_hosts_are_links_to_them():
    """Only this site's images are drawn: another host's (a reply must not make the browser
    call it) is a link to it, with the image's text, or "image" if it has none (it was an
    image without a source, which Chromium drew as a broken image's icon beside its text)."""
    html = render_markdown(
        '![a *b*](https://evil.example/p.png "T") ![](//evil.example/q.png) ![c](/static/ok.png)'
        " ![d](data:image/png;base64,AAAA)"
    )
    assert html == (
        '<p><a href="https://evil.example/p.png" class="image-link" title="T" '
        'rel="noopener noreferrer nofollow">a b</a> '
        '<a href="//evil.example/q.png" class="image-link" rel="noopener noreferrer nofollow">'
        'image</a> <img src="/static/ok.png" alt="c"> '
        '<a class="image-link" rel="noopener noreferrer nofollow">d</a></p>\n'
    )
    assert "<img" not in render_markdown('![x"><img src=x onerror=alert(1)>](https://e.x/p.png)')
    assert ">image</a>" in render_markdown("![ ](https://evil.example/p.png)")


def test_an_image_from_another_host_in_a_link_is_its_text_in_that_link():
    """A badge ("[![build](https://...)](https://...)"): no link in the link (a second read:
    the sanitiser closed the outer link before the image's, which left it empty, nameless
    and still a tab stop, and the words after the image out of it)."""
    html = render_markdown("[![build](https://img.example/b.svg) and more](https://example.com)")
    assert html == (
        '<p><a href="https://example.com" rel="noopener noreferrer nofollow">'
        '<span class="image-link">build</span> and more</a></p>\n'
    )


def test_links_open_safely_and_code_is_highlighted():
    html = render_markdown("[docs](https://example.com)\n\n```python\nprint('x')\n```")
    assert 'rel="noopener noreferrer nofollow"' in html
    assert '<code class="language-python">' in html and '<span class="nb">print</span>' in html


def test_a_fence_whose_language_is_only_what_python_splits_on_renders_as_plain_code():
    """markdown-it passes "\x85" (or "\x1c"...) as the fence's language, which Python's
    split() takes for white space: the highlighter raised IndexError, so the reply could not
    be rendered, while it streamed or when it was saved."""
    from chat.progressive import ProgressiveRenderer

    for mark in ("\x85", "\x1c", "\x1f"):
        text = f"Look:\n\n```{mark}\nx = 1\n```\n"
        html = render_markdown(text)
        assert "<pre><code" in html and "x = 1" in html
        renderer = ProgressiveRenderer()
        for char in text:
            renderer.feed(char)
        assert renderer.finish()[1] == html


def test_a_columns_alignment_is_a_class_of_its_cells():
    """markdown-it writes a column's alignment as a style attribute, which the sanitizer
    stripped (and the page's CSP would refuse): it is a class of the column's cells."""
    html = render_markdown("| a | b | c | d |\n|:--|--:|:-:|---|\n| 1 | 2 | 3 | 4 |\n")
    assert '<th class="align-left">a</th>' in html and '<td class="align-left">1</td>' in html
    assert '<th class="align-right">b</th>' in html and '<td class="align-right">2</td>' in html
    assert '<td class="align-center">3</td>' in html and "<td>4</td>" in html
    assert "style" not in html


def test_a_cells_class_is_only_an_alignment():
    def cleaned(cells: str) -> str:
        return _clean(f"<table><tbody><tr>{cells}</tr></tbody></table>")

    assert "<td>1</td><th>2</th>" in cleaned('<td class="align-right x">1</td><th class="e">2</th>')
    assert '<td class="align-center">1</td>' in cleaned('<td class="align-center" style="x">1</td>')


def test_bold_beside_cjk_punctuation_renders_as_bold():
    """CommonMark's CJK-friendly amendment: Chinese, Japanese and Korean put no space between
    full-width punctuation and the next word, and plain CommonMark left the marks of
    "**注意：**请" as text, stars showing (the way Qwen and DeepSeek write their headings)."""
    cases = {
        "**注意：**请确认配置。": "<strong>注意：</strong>请确认配置。",
        "这是**「重要」**的事": "这是<strong>「重要」</strong>的事",
        "これは**私のやりたかったこと。**だからするの。": "これは<strong>私のやりたかったこと。</strong>だから",
        "我可以强调**这个`code`**吗": "<strong>这个<code>code</code></strong>吗",
        "**이 용어(This term)**를 강조해": "<strong>이 용어(This term)</strong>를",
        "Git**（注：不是GitHub）**": "Git<strong>（注：不是GitHub）</strong>",
        "**推荐几个框架：**React、Vue": "<strong>推荐几个框架：</strong>React、Vue",
        "*注意：*请": "<em>注意：</em>请",
        "~~删除：~~文字": "<s>删除：</s>文字",
        "大塚\ufe00**(U+585A)**": "大塚\ufe00<strong>(U+585A)</strong>",
        "**\u201c\ufe01Git\u201d\ufe01**Hub": "<strong>\u201c\ufe01Git\u201d\ufe01</strong>Hub",
        "\u201c\ufe01**(注)**です": "\u201c\ufe01<strong>(注)</strong>です",
        "葛\U000e0100**(U+845B)**です": "<strong>(U+845B)</strong>です",
    }
    for text, formatted in cases.items():
        assert formatted in render_markdown(text), text
    # Underscores inside words, and marks beside other punctuation, are as CommonMark has them
    for text in [
        "__注意：__请",
        "中_文_字",
        "a**a«**a",
        "a**∇a**a",
        "**a.**b",
        "2**10",
        "snake_case",
    ]:
        assert "<strong>" not in render_markdown(text) and "<em>" not in render_markdown(text)


def test_a_line_end_between_chinese_or_japanese_characters_draws_nothing():
    """A line end inside a paragraph renders as a line end, which Chromium draws as a space:
    in the middle of a Chinese or Japanese sentence ("第一行\n第二行", a model wrapping its
    lines) a space stood where none belongs. Between two of their characters (past marks, in
    a code span too) it renders as nothing, as CSS Text's segment break rule has it; beside
    other text, Korean (which spaces its words), or a hard line break, as before."""
    for text, html in {
        # joined
        "第一行\n第二行": "<p>第一行第二行</p>",
        "日本語の文章。\nです": "<p>日本語の文章。です</p>",
        "カタカナ\nひらがな": "<p>カタカナひらがな</p>",
        "**强调**\n中文": "<p><strong>强调</strong>中文</p>",
        "中文\n[链接](/x)": '<p>中文<a href="/x" rel="noopener noreferrer nofollow">链接</a></p>',
        "中文\n`代码`": "<p>中文<code>代码</code></p>",
        "- 第一\n  第二": "<li>第一第二</li>",
        "> 引用\n> 第二": "<p>引用第二</p>",
        "（注）\n（二）": "<p>（注）（二）</p>",
        "\U00020000\n中": "<p>\U00020000中</p>",
        # kept
        "中文\nEnglish": "<p>中文\nEnglish</p>",
        "English\n中文": "<p>English\n中文</p>",
        "한국어\n한국어": "<p>한국어\n한국어</p>",
        "中文  \n中文": "<p>中文<br>\n中文</p>",
        "中文\\\n中文": "<p>中文<br>\n中文</p>",
        "中文\n![图](/x.png)": '<p>中文\n<img src="/x.png" alt="图"></p>',
        "line\nwrapped": "<p>line\nwrapped</p>",
        "```\n中文\n中文\n```": "<code>中文\n中文\n</code>",
    }.items():
        assert html in render_markdown(text), text


MARKDOWN_WITHOUT_CJK = st.lists(
    st.one_of(
        st.sampled_from([*"*_~`[]()!.,:;\"'- \n#>1", "**", "~~", "\u00ab", "\u2019"]),
        st.characters(codec="latin-1", exclude_categories=["Cc"]),
    ),
    max_size=40,
).map("".join)


@settings(max_examples=1500, deadline=None)
@given(MARKDOWN_WITHOUT_CJK)
def test_text_without_cjk_characters_renders_as_commonmark_has_it(text):
    """The amendment changes nothing where no CJK character (nor a variation selector) is
    beside a mark (its own tests run CommonMark's spec examples so)."""
    amended = MarkdownIt("js-default").use(cjk_friendly)
    assert amended.render(text) == MarkdownIt("js-default").render(text)


@pytest.mark.django_db(transaction=True)
def test_replies_saved_before_with_cjk_marks_are_rendered_anew(user):
    """Replies saved with their CJK bold's stars showing, or with line ends between CJK
    characters, are rendered anew by a migration; the others keep the HTML they were saved
    with."""
    executor = MigrationExecutor(connection)
    executor.migrate([("chat", "0011_title_source_asked")])
    old = executor.loader.project_state([("chat", "0011_title_source_asked")]).apps
    conversation = old.get_model("chat", "Conversation").objects.create(owner_id=user.pk)
    Message = old.get_model("chat", "Message")
    saved = {
        text: Message.objects.create(
            conversation_id=conversation.pk,
            role="assistant",
            status="complete",
            content=text,
            content_html=html,
        ).pk
        for text, html in [
            ("**注意：**请确认", "<p>**注意：**请确认</p>\n"),
            ("**\u263a\ufe0e**b", "<p><strong>\u263a\ufe0e</strong>b</p>\n"),
            ("**Note:** read it", "<p>as saved</p>\n"),
            ("没有标记。", "<p>as saved too</p>\n"),
            ("第一行\n第二行", "<p>第一行\n第二行</p>\n"),
            ("line\nwrapped", "<p>as saved, three</p>\n"),
        ]
    }
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    html = {text: Message.objects.get(pk=pk).content_html for text, pk in saved.items()}
    assert html["**注意：**请确认"] == "<p><strong>注意：</strong>请确认</p>\n"
    # (a text's variation selector: the amendment reads it with the character before it)
    assert html["**\u263a\ufe0e**b"] == render_markdown("**\u263a\ufe0e**b")
    assert html["**Note:** read it"] == "<p>as saved</p>\n"
    assert html["没有标记。"] == "<p>as saved too</p>\n"
    assert html["第一行\n第二行"] == "<p>第一行第二行</p>\n"  # (0013: line ends joined)
    assert html["line\nwrapped"] == "<p>as saved, three</p>\n"


def test_a_code_block_is_highlighted_the_same_whatever_was_highlighted_before():
    """Lexers found once per language are made anew for each block: some keep state while
    they run (a Modula-2 block's dialect marker), which a shared one carried into the next
    render, another user's reply perhaps."""
    block = "```modula2\nMODULE M;\nBEGIN\n  WITH r DO x := 1 END\nEND M.\n```\n"
    alone = render_markdown(block)
    render_markdown("```modula2\n(*!m2r10*)\nMODULE N;\nEND N.\n```\n")
    assert render_markdown(block) == alone
