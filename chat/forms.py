from django import forms

from .services import MAX_MESSAGE_LENGTH


class MessageForm(forms.Form):
    content = forms.CharField(max_length=MAX_MESSAGE_LENGTH, strip=False)
    idempotency_key = forms.UUIDField(required=False)

    def clean_content(self) -> str:
        content: str = self.cleaned_data["content"]
        if not content.strip():
            raise forms.ValidationError("Type a message first.")
        return content
