"""The rules of :func:`magstat.core.assess.assess`, one module per area, sharing one working state."""
