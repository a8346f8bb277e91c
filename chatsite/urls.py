from django.conf import settings
from django.contrib import admin
from django.contrib.auth import urls as auth_urls
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from chat.views import LoginView

# Password reset sends an email: without a mail server its pages would promise a message that
# never comes, so they exist only when DJANGO_EMAIL_HOST is set.
account_urls = [
    url
    for url in auth_urls.urlpatterns
    if settings.PASSWORD_RESET_ENABLED or "reset" not in str(url.pattern)
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("accounts/", include(account_urls)),
    # Pages that do not link the icon (the admin) still get one.
    path("favicon.ico", RedirectView.as_view(url=static("chat/favicon.svg"), permanent=True)),
    path("", include("chat.urls")),
]
