"""Seed a demo: an admin login and about 12 weeks of transactions, most approved, via the real commands."""
import random
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.utils import timezone

from transactions import services
from transactions.models import Transaction

CURRENCIES = {"EUR": (20, 2500, 2), "USD": (20, 3000, 2), "JPY": (2000, 300000, 0)}
DEMO_USERNAME = "admin"
DEMO_PASSWORD = "ledgerpulse-demo"


class Command(BaseCommand):
    help = "Create the demo admin and, on an empty database, demo transactions through the normal commands."

    def add_arguments(self, parser):
        parser.add_argument("--transactions", type=int, default=240)
        parser.add_argument("--weeks", type=int, default=12)
        parser.add_argument("--password", default=DEMO_PASSWORD)
        parser.add_argument("--seed", type=int, default=2026)

    def handle(self, *args, transactions, weeks, password, seed, **options):
        user = self._ensure_admin(password)
        if Transaction.objects.exists():
            self.stdout.write("transactions exist already: not seeding more")
        else:
            self._seed(user.get_username(), transactions, weeks, random.Random(seed))
        self.stdout.write(self.style.SUCCESS(f"login: {DEMO_USERNAME} / {password}"))

    def _ensure_admin(self, password):
        User = get_user_model()
        user, _ = User.objects.get_or_create(username=DEMO_USERNAME, defaults={"email": "admin@example.com"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        return user

    def _seed(self, actor, count, weeks, rng):
        now = timezone.now()
        span = timedelta(weeks=weeks)
        approved = rejected = 0
        for _ in range(count):
            currency = rng.choice(list(CURRENCIES))
            low, high, digits = CURRENCIES[currency]
            minor = rng.randint(low * 10**digits, high * 10**digits)
            amount = Decimal(minor).scaleb(-digits)
            occurred_at = now - span * rng.random()
            txn = services.transaction_submit(
                amount=amount,
                currency=currency,
                occurred_at=occurred_at,
                reference=f"INV-{rng.randint(10000, 99999)}",
                description="demo payment",
                actor=actor,
            )
            roll = rng.random()
            # Recent transactions are more likely still waiting for a decision.
            if roll < 0.78 and occurred_at < now - timedelta(days=2) or roll < 0.5:
                services.transaction_approve(transaction_id=txn.id, actor=actor, reason="demo")
                approved += 1
            elif roll < 0.88:
                services.transaction_reject(transaction_id=txn.id, actor=actor, reason="demo: duplicate invoice")
                rejected += 1
        pending = count - approved - rejected
        self.stdout.write(f"seeded {count} transactions: {approved} approved, {rejected} rejected, {pending} pending")
