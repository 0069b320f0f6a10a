"""/console/: the customer-service console (see views.py)."""

from django.urls import path

from . import views

app_name = "console"

urlpatterns = [
    path("", views.search, name="search"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("orders/<str:number>/", views.order_detail, name="order"),
    path("orders/<str:number>/cancel/", views.cancel, name="cancel"),
    path("orders/<str:number>/hold/", views.hold, name="hold"),
    path("orders/<str:number>/release/", views.release, name="release"),
    path("orders/<str:number>/address/", views.change_address, name="address"),
    path("orders/<str:number>/note/", views.add_note, name="note"),
    path("orders/<str:number>/route-again/", views.route_again, name="route-again"),
    path("orders/<str:number>/fulfilments/<int:fulfillment_id>/reroute/", views.reroute, name="reroute"),
    path("orders/<str:number>/fulfilments/<int:fulfillment_id>/resend/", views.resend, name="resend"),
    path("orders/<str:number>/return/", views.create_return, name="return"),
    path("orders/<str:number>/returns/<str:return_number>/receive/", views.receive_return, name="receive"),
    path("orders/<str:number>/appease/", views.appease, name="appease"),
    path(
        "orders/<str:number>/appeasements/<int:appeasement_id>/<slug:decision>/",
        views.decide_appeasement,
        name="appeasement-decision",
    ),
    path("queues/", views.queues, name="queues"),
    path("queues/<slug:name>/", views.queue, name="queue"),
    path("inventory/", views.inventory, name="inventory"),
    path("customers/<int:pk>/", views.customer, name="customer"),
]
