"""Returns, refunds, exchanges and appeasements (issue 6).

Entry points for the API, the admin, tasks and the CSR console (keyword-only; `actor` is an
`oms.actor.Actor`, a Django user's for people — permission checks use it):

- `services.return_create(data=ReturnInput, actor)`: an RMA for shipped units (exchange lines
  optional); `return_authorise`, `return_reject`, `return_cancel`, `return_mark_in_transit`,
  `return_close`; `return_receive(return_id, location, lines=[ReceiveLineInput], actor,
  refund_amount=None, override_reason="")`: inspection, restock / write-off / RTV, refund.
- `appeasements.appeasement_create / appeasement_approve / appeasement_decline`, and
  `appeasements.appeasement_limit(actor)` to show a person their limit.
- `refunds.refund_retry(refund_id, actor)` for a failed refund.
- Reads: `selectors.returnable(lines)` (what each line can still return), `policy_for(channel)`,
  `return_detail_queryset()`; `labels.return_carrier(rma)`.

Errors are `oms.errors` domain errors (ValidationFailed 400, PermissionDenied 403, NotFound 404,
InvalidTransition / Conflict / InsufficientStock 409) with field paths, raised before anything
is written.
"""
