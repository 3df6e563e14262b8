"""The approvals benchmark's baseline: a minimal Django + DRF project whose endpoint only updates a status column."""
