"""An item with a status: all the baseline writes."""
from django.db import models


class Item(models.Model):
    status = models.CharField(max_length=8, default="pending")
