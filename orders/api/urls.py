from django.urls import path

from . import fulfillments, views

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
]
