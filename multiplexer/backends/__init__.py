"""Billing backends: one interface (``base.BillingBackend``), one module per system."""
