from django.urls import path

from . import webhooks

urlpatterns = [
    path("webhook-subscriptions/", webhooks.SubscriptionList.as_view(), name="webhook-subscription-list"),
    path("webhook-subscriptions/<int:pk>/", webhooks.SubscriptionDetail.as_view(), name="webhook-subscription-detail"),
    path(
        "webhook-subscriptions/<int:pk>/deliveries/",
        webhooks.DeliveryList.as_view(),
        name="webhook-subscription-deliveries",
    ),
]
