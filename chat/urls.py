from django.urls import path

from . import views

app_name = "chat"

urlpatterns = [
    path("", views.start, name="start"),
    path("new/", views.conversation_start, name="conversation_start"),
    path("conversations/", views.conversation_sidebar, name="conversation_sidebar"),
    path("c/", views.conversation_create, name="conversation_create"),
    path("c/<uuid:conversation_id>/", views.conversation_detail, name="conversation_detail"),
    path("c/<uuid:conversation_id>/rename/", views.conversation_rename, name="conversation_rename"),
    path(
        "c/<uuid:conversation_id>/settings/",
        views.conversation_configure,
        name="conversation_configure",
    ),
    path(
        "c/<uuid:conversation_id>/organize/",
        views.conversation_organize,
        name="conversation_organize",
    ),
    path("c/<uuid:conversation_id>/delete/", views.conversation_delete, name="conversation_delete"),
    path("c/<uuid:conversation_id>/messages/", views.message_create, name="message_create"),
    path(
        "c/<uuid:conversation_id>/messages/<int:message_id>/",
        views.message_detail,
        name="message_detail",
    ),
    path(
        "c/<uuid:conversation_id>/messages/<int:message_id>/text/",
        views.message_text,
        name="message_text",
    ),
    path(
        "c/<uuid:conversation_id>/messages/<int:message_id>/edit/",
        views.message_edit,
        name="message_edit",
    ),
    path(
        "c/<uuid:conversation_id>/messages/<int:message_id>/feedback/",
        views.message_feedback,
        name="message_feedback",
    ),
    path(
        "c/<uuid:conversation_id>/messages/<int:message_id>/stop/",
        views.message_stop,
        name="message_stop",
    ),
    path(
        "c/<uuid:conversation_id>/messages/<int:message_id>/select/",
        views.message_select,
        name="message_select",
    ),
    path(
        "c/<uuid:conversation_id>/messages/<int:message_id>/retry/",
        views.message_retry,
        name="message_retry",
    ),
    path(
        "c/<uuid:conversation_id>/messages/<int:message_id>/continue/",
        views.message_continue,
        name="message_continue",
    ),
]
