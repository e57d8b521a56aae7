"""twinbill reconciler."""
