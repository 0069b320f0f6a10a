from django.urls import path

from . import views

urlpatterns = [
    path("returns/", views.ReturnListCreate.as_view(), name="return-list"),
    path("returns/<str:ref>/", views.ReturnDetail.as_view(), name="return-detail"),
    path("returns/<str:ref>/authorise/", views.ReturnAuthorise.as_view(), name="return-authorise"),
    path("returns/<str:ref>/reject/", views.ReturnReject.as_view(), name="return-reject"),
    path("returns/<str:ref>/cancel/", views.ReturnCancel.as_view(), name="return-cancel"),
    path("returns/<str:ref>/in-transit/", views.ReturnInTransit.as_view(), name="return-in-transit"),
    path("returns/<str:ref>/receive/", views.ReturnReceive.as_view(), name="return-receive"),
    path("returns/<str:ref>/close/", views.ReturnClose.as_view(), name="return-close"),
    path("returns/<str:ref>/label/", views.ReturnLabel.as_view(), name="return-label"),
    path("return-reasons/", views.ReturnReasonList.as_view(), name="return-reason-list"),
    path("appeasements/", views.AppeasementListCreate.as_view(), name="appeasement-list"),
]
