from django.urls import path

from . import views

urlpatterns = [
    path("locations/", views.LocationList.as_view(), name="location-list"),
    path("locations/<slug:code>/", views.LocationDetail.as_view(), name="location-detail"),
    path("items/", views.ItemList.as_view(), name="item-list"),
    path("items/<str:sku>/", views.ItemDetail.as_view(), name="item-detail"),
    path("channels/", views.ChannelList.as_view(), name="channel-list"),
    path("channels/<slug:code>/", views.ChannelDetail.as_view(), name="channel-detail"),
    path("availability/", views.AvailabilityView.as_view(), name="availability"),
    path("availability/breakdown/", views.AvailabilityBreakdownView.as_view(), name="availability-breakdown"),
    path("inventory/adjustments/", views.AdjustmentsView.as_view(), name="inventory-adjustments"),
    path("inventory/locations/<slug:code>/snapshot/", views.SnapshotView.as_view(), name="inventory-snapshot"),
    path("inventory/stock/", views.StockList.as_view(), name="inventory-stock"),
    path("inventory/movements/", views.MovementList.as_view(), name="inventory-movements"),
    path("inventory/supply/", views.SupplyView.as_view(), name="inventory-supply"),
    path("inventory/supply/<int:pk>/receive/", views.SupplyReceiveView.as_view(), name="inventory-supply-receive"),
    path("reservations/", views.ReservationsView.as_view(), name="reservations"),
    path("reservations/<str:key>/", views.ReservationDetailView.as_view(), name="reservation-detail"),
]
