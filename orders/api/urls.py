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
]
