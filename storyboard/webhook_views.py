"""Outgoing webhooks: the owners' pages to add, change, test and delete a team's endpoints and
read what was sent to each (storyboard/webhooks.py does the work). Other roles get a 403: an
endpoint's page shows its signing secret."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Max, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from accounts.models import Membership
from storyboard import webhooks
from storyboard.access import (
    get_webhook_delivery_for_user,
    get_webhook_endpoint_for_user,
    get_webhook_team_for_user,
)
from storyboard.forms import WebhookEndpointForm, WebhookSettingsForm
from storyboard.models import WebhookDelivery, WebhookEndpoint

INVALID = 422
DELIVERIES_PER_PAGE = 25
LIST = "storyboard/webhooks.html"
ENDPOINT = "storyboard/webhook.html"


@login_required
@require_http_methods(["GET", "POST"])
def webhooks_page(request: HttpRequest, team_id: int) -> HttpResponse:
    """GET: the team's endpoints and a form for a new one. POST: add it, then its page (with
    the secret to verify signatures)."""
    membership = get_webhook_team_for_user(request, team_id)
    form = WebhookEndpointForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                endpoint = webhooks.create_endpoint(team=membership.team, user=request.user,
                                                    url=data["url"], label=data["label"],
                                                    events=data["events"])
            except webhooks.WebhookRefused as e:
                form.add_error(e.field, e.message)
            else:
                messages.success(request, f"Webhook “{endpoint.title}” added. Send a test ping "
                                          "to check your receiver.")
                return redirect("sb:webhook-endpoint", endpoint.pk)
        return _list(request, membership, form=form, status=INVALID)
    return _list(request, membership, form=form)


def _list(request: HttpRequest, membership: Membership, *, form: WebhookEndpointForm,
          status: int = 200) -> HttpResponse:
    endpoints = membership.team.webhook_endpoints.annotate(
        sent=Count("deliveries", filter=Q(deliveries__state=WebhookDelivery.State.DELIVERED)),
        failed=Count("deliveries", filter=Q(deliveries__state=WebhookDelivery.State.FAILED)),
        last_at=Max("deliveries__created_at"))
    template = f"{LIST}#endpoints" if request.htmx else LIST
    return render(request, template, {"team": membership.team, "membership": membership,
                                      "endpoints": endpoints, "form": form}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def webhook_endpoint(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    """GET: the endpoint's settings, secret and delivery log (htmx: one page of the log).
    POST: change its events, name and whether it is on."""
    endpoint = get_webhook_endpoint_for_user(request, endpoint_id)
    if request.method == "POST":
        form = WebhookSettingsForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                webhooks.update_endpoint(endpoint=endpoint, user=request.user,
                                         events=data["events"], active=data["active"],
                                         label=data["label"])
            except webhooks.WebhookRefused as e:
                form.add_error(e.field, e.message)
            else:
                messages.success(request, "Webhook saved." if endpoint.active else
                                 "Webhook saved; it is off and hears nothing until turned on.")
                return redirect("sb:webhook-endpoint", endpoint.pk)
        return _endpoint(request, endpoint, form=form, status=INVALID)
    if request.htmx:
        return _deliveries(request, endpoint)
    return _endpoint(request, endpoint)


def _settings_form(endpoint: WebhookEndpoint) -> WebhookSettingsForm:
    return WebhookSettingsForm(initial={"label": endpoint.label, "events": endpoint.events,
                                        "active": endpoint.active})


def _page(request: HttpRequest, endpoint: WebhookEndpoint):
    deliveries = endpoint.deliveries.order_by("-created_at", "-pk")
    return Paginator(deliveries, DELIVERIES_PER_PAGE).get_page(request.GET.get("page"))


def _endpoint(request: HttpRequest, endpoint: WebhookEndpoint, *,
              form: WebhookSettingsForm | None = None, status: int = 200) -> HttpResponse:
    return render(request, ENDPOINT, {"endpoint": endpoint, "team": endpoint.team,
                                      "form": form or _settings_form(endpoint),
                                      "page": _page(request, endpoint),
                                      "now": timezone.now()}, status=status)


def _deliveries(request: HttpRequest, endpoint: WebhookEndpoint) -> HttpResponse:
    return render(request, f"{ENDPOINT}#deliveries",
                  {"endpoint": endpoint, "page": _page(request, endpoint)})


@login_required
@require_POST
def webhook_delete(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = get_webhook_endpoint_for_user(request, endpoint_id)
    team_id = endpoint.team_id
    webhooks.delete_endpoint(endpoint=endpoint, user=request.user)
    messages.success(request, f"Webhook “{endpoint.title}” deleted; nothing more is sent to it.")
    return redirect("sb:webhooks", team_id)


@login_required
@require_POST
def webhook_rotate(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = get_webhook_endpoint_for_user(request, endpoint_id)
    webhooks.rotate_secret(endpoint=endpoint, user=request.user)
    messages.success(request, "New secret made. For the next 24 hours every delivery is also "
                              "signed with the old one, so update your receiver now.")
    return redirect("sb:webhook-endpoint", endpoint.pk)


@login_required
@require_POST
def webhook_ping(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = get_webhook_endpoint_for_user(request, endpoint_id)
    webhooks.send_ping(endpoint=endpoint, user=request.user)
    if request.htmx:
        return _deliveries(request, endpoint)
    messages.success(request, "Test ping queued; it shows below once sent.")
    return redirect("sb:webhook-endpoint", endpoint.pk)


@login_required
@require_POST
def webhook_redeliver(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = get_webhook_delivery_for_user(request, delivery_id)
    try:
        webhooks.redeliver(delivery=delivery, user=request.user)
    except webhooks.WebhookRefused as e:
        messages.error(request, e.message)
    else:
        if not request.htmx:
            messages.success(request, f"{delivery.event} {delivery.event_id} queued again, "
                                      "with the same event id.")
    if request.htmx:
        return _deliveries(request, delivery.endpoint)
    return redirect("sb:webhook-endpoint", delivery.endpoint_id)
