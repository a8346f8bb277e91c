from typing import Any

from django import forms

from .services import MAX_MESSAGE_LENGTH


class MessageForm(forms.Form):
    content = forms.CharField(max_length=MAX_MESSAGE_LENGTH, strip=False)
    idempotency_key = forms.UUIDField(required=False)
    # The last message the page shows (0: none), where the message goes; left out, the
    # conversation's last message.
    after = forms.IntegerField(required=False, min_value=0)

    def clean_content(self) -> str:
        content: str = self.cleaned_data["content"]
        if not content.strip():
            raise forms.ValidationError("Type a message first.")
        return content


class StartForm(MessageForm):
    """The first message of a conversation, and the model it is for (the default if none)."""

    model = forms.ChoiceField(required=False)

    def __init__(self, *args: Any, models: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [(m, m) for m in models]  # type: ignore[attr-defined]


class RenameForm(forms.Form):
    title = forms.CharField(max_length=200)


class OrganizeForm(forms.Form):
    pinned = forms.NullBooleanField(required=False)
    archived = forms.NullBooleanField(required=False)


class ConversationSettingsForm(forms.Form):
    model = forms.ChoiceField()
    system_prompt = forms.CharField(required=False, max_length=20_000, strip=False)

    def __init__(self, *args: Any, models: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [(m, m) for m in models]  # type: ignore[attr-defined]

    def clean_system_prompt(self) -> str:
        # Kept as typed (indentation is meaning), but one of blanks alone is none: the model is
        # sent no such prompt, and the page must not say one is set.
        prompt: str = self.cleaned_data["system_prompt"]
        return prompt if prompt.strip() else ""


class EditForm(forms.Form):
    content = forms.CharField(max_length=MAX_MESSAGE_LENGTH, strip=False)

    def clean_content(self) -> str:
        content: str = self.cleaned_data["content"]
        if not content.strip():
            raise forms.ValidationError("Type a message first.")
        return content


class FeedbackForm(forms.Form):
    rating = forms.ChoiceField(
        choices=[("up", "up"), ("down", "down"), ("", "none")], required=False
    )
    comment = forms.CharField(required=False, max_length=5000)
