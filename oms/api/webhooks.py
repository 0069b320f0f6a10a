from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers

from oms.api.scoping import bound_channel_id
from oms.models import WebhookDelivery, WebhookSubscription

SCOPES = {"GET": "webhooks:manage", "POST": "webhooks:manage", "DELETE": "webhooks:manage"}


class SubscriptionSerializer(serializers.ModelSerializer):
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=[*WebhookSubscription.EVENTS, "*"]), allow_empty=False, max_length=50
    )
    secret = serializers.CharField(min_length=16, max_length=200, write_only=True)
    url = serializers.URLField(max_length=500)

    class Meta:
        model = WebhookSubscription
        fields = ["id", "url", "events", "secret", "active", "created_at"]

    def validate_url(self, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise serializers.ValidationError("Use an http(s) URL.")
        return value


class DeliverySerializer(serializers.ModelSerializer):
    attempts_log = serializers.SerializerMethodField()

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_id",
            "event_type",
            "status",
            "attempts",
            "last_status_code",
            "last_error",
            "next_attempt_at",
            "delivered_at",
            "created_at",
            "attempts_log",
        ]

    def get_attempts_log(self, delivery) -> list[dict]:
        return [
            {"at": a.attempted_at, "status_code": a.status_code, "error": a.error, "duration_ms": a.duration_ms}
            for a in delivery.attempt_log.all()
        ]


def _subscriptions(request):
    qs = WebhookSubscription.objects.filter(active=True).order_by("id")
    channel_id = bound_channel_id(request)
    return qs.filter(channel_id=channel_id) if channel_id else qs


class SubscriptionList(generics.ListCreateAPIView):
    serializer_class = SubscriptionSerializer
    required_scopes = SCOPES

    def get_queryset(self):
        return _subscriptions(self.request)

    def perform_create(self, serializer):
        key = self.request.auth
        serializer.save(api_key=key, channel_id=bound_channel_id(self.request))


class SubscriptionDetail(generics.RetrieveDestroyAPIView):
    serializer_class = SubscriptionSerializer
    required_scopes = SCOPES

    def get_queryset(self):
        return _subscriptions(self.request)

    def perform_destroy(self, instance):
        # Keep the delivery log; a removed subscription just stops receiving.
        instance.active = False
        instance.save(update_fields=["active"])


class DeliveryList(generics.ListAPIView):
    serializer_class = DeliverySerializer
    required_scopes = SCOPES

    @extend_schema(responses=DeliverySerializer(many=True))
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return WebhookDelivery.objects.none()
        return (
            WebhookDelivery.objects.filter(
                subscription__in=_subscriptions(self.request), subscription_id=self.kwargs["pk"]
            )
            .prefetch_related("attempt_log")
            .order_by("-id")
        )
