"""Incidents: flagged releases grouped by account, time, payload and indicators; their briefs."""
