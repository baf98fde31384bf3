from __future__ import annotations

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storyboard.settings")
# Django must be set up before the consumers (and the models they import) load.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from storyboard.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Browsers send cookies on cross-site websocket handshakes, so the Origin check is what
        # stops another site from opening a board socket as the signed-in user.
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)

# What is loaded by now (Django, the app, its URLs: ~150,000 objects) lives as long as the
# process. Frozen, the collector's full passes skip it: each walked all of it, a 60 ms pause
# for every socket and request of this server at random moments.
gc.freeze()
