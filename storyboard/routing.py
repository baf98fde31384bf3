from __future__ import annotations

from django.urls import path

from storyboard.consumers import BoardConsumer, PersonConsumer

websocket_urlpatterns = [
    path("ws/projects/<int:project_id>/", BoardConsumer.as_asgi()),
    path("ws/me/", PersonConsumer.as_asgi()),
]
