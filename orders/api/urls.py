from django.urls import path

from . import fulfillments, shipments, views

urlpatterns = [
    path("orders/", views.OrderListCreate.as_view(), name="order-list"),
    path("orders/<str:number>/", views.OrderDetail.as_view(), name="order-detail"),
    path("orders/<str:number>/cancel/", views.OrderCancel.as_view(), name="order-cancel"),
    path("orders/<str:number>/hold/", views.OrderHoldView.as_view(), name="order-hold"),
    path("orders/<str:number>/release/", views.OrderRelease.as_view(), name="order-release"),
    path("orders/<str:number>/notes/", views.OrderNote.as_view(), name="order-notes"),
    path("fulfillments/", fulfillments.FulfillmentList.as_view(), name="fulfillment-list"),
    path("fulfillments/<int:pk>/accept/", fulfillments.FulfillmentAccept.as_view(), name="fulfillment-accept"),
    path("fulfillments/<int:pk>/reject/", fulfillments.FulfillmentReject.as_view(), name="fulfillment-reject"),
    path(
        "fulfillments/<int:pk>/start-picking/",
        fulfillments.FulfillmentStartPicking.as_view(),
        name="fulfillment-start-picking",
    ),
    path("fulfillments/<int:pk>/pack/", fulfillments.FulfillmentPack.as_view(), name="fulfillment-pack"),
    path("fulfillments/<int:pk>/ship/", fulfillments.FulfillmentShip.as_view(), name="fulfillment-ship"),
    path(
        "fulfillments/<int:pk>/ready-for-pickup/",
        fulfillments.FulfillmentReadyForPickup.as_view(),
        name="fulfillment-ready-for-pickup",
    ),
    path("fulfillments/<int:pk>/picked-up/", fulfillments.FulfillmentPickedUp.as_view(), name="fulfillment-picked-up"),
    path("fulfillments/<int:pk>/deliver/", fulfillments.FulfillmentDeliver.as_view(), name="fulfillment-deliver"),
    path("shipments/<int:pk>/", shipments.ShipmentDetail.as_view(), name="shipment-detail"),
    path("shipments/<int:pk>/label/", shipments.ShipmentLabel.as_view(), name="shipment-label"),
    path("shipments/<int:pk>/void-label/", shipments.ShipmentVoidLabel.as_view(), name="shipment-void-label"),
    path("shipments/<int:pk>/relabel/", shipments.ShipmentRelabel.as_view(), name="shipment-relabel"),
    path("carriers/", shipments.CarrierList.as_view(), name="carrier-list"),
    path("carriers/<slug:code>/tracking/", shipments.CarrierTrackingWebhook.as_view(), name="carrier-tracking-webhook"),
]
