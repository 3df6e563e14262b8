"""Seed a demo: an admin login and about 12 weeks of transactions, most approved, via the real commands."""
import random
from collections import Counter
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.utils import timezone

from transactions import services
from transactions.models import Transaction, TransactionStatus

CURRENCIES = {"EUR": (20, 2500, 2), "USD": (20, 3000, 2), "JPY": (2000, 300000, 0)}
DEMO_USERNAME = "admin"
DEMO_PASSWORD = "ledgerpulse-demo"
# Who submits the demo's transactions: a process, not a login, so the demo admin may approve them
# (nobody approves their own submission). Their submitted_by says "seed_demo".
SEED_ACTOR = "seed_demo"
# Per currency, the smallest approval of the last few days is reversed afterwards (a refund), so the
# demo shows corrections. Only small, recent ones: a reversal counts in the week it happens (this one,
# at seeding time), and refunds of older income would all land there and push its net below zero.
RECENT = timedelta(days=3)


class Command(BaseCommand):
    help = (
        "On a database without transactions: create the demo admin if there is no user of that name, and "
        "seed demo transactions through the normal commands. Never changes an existing user; a database "
        "that has any transaction is left alone (exit 0 with a message)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--transactions", type=int, default=240)
        parser.add_argument("--weeks", type=int, default=12)
        parser.add_argument("--password", default=DEMO_PASSWORD)
        parser.add_argument("--seed", type=int, default=2026)

    def handle(self, *args, transactions, weeks, password, seed, **options):
        # A database with history is not a demo: no user is created or touched, nothing is added.
        if Transaction.objects.exists():
            self.stdout.write("the database has transactions already: not seeding (no user created or changed)")
            return
        user, created = self._ensure_admin(password)
        self._seed(user.get_username(), transactions, weeks, random.Random(seed))
        if created:
            self.stdout.write(self.style.SUCCESS(f"login: {DEMO_USERNAME} / {password}"))
        else:
            self.stdout.write(f"user {DEMO_USERNAME!r} exists already: left unchanged (its password and rights are yours)")

    def _ensure_admin(self, password):
        User = get_user_model()
        user = User.objects.filter(username=DEMO_USERNAME).first()
        if user is not None:
            return user, False
        user = User(username=DEMO_USERNAME, email="admin@example.com", is_staff=True, is_superuser=True)
        user.set_password(password)
        user.save()
        return user, True

    def _seed(self, actor, count, weeks, rng):
        now = timezone.now()
        span = timedelta(weeks=weeks)
        refundable = {}  # currency -> (amount, id) of its smallest recent approval
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
                actor=SEED_ACTOR,
            )
            roll = rng.random()
            # Recent transactions are more likely still waiting for a decision.
            if roll < 0.78 and occurred_at < now - timedelta(days=2) or roll < 0.5:
                # Under APPROVAL_DUAL_CONTROL a large one stays awaiting a second approver (someone
                # other than the demo admin): nothing special, that is what the setting means.
                decision = services.transaction_approve(transaction_id=txn.id, actor=actor, reason="demo")
                if decision.transaction.status == TransactionStatus.APPROVED and occurred_at > now - RECENT:
                    refundable[currency] = min(refundable.get(currency, (amount, txn.id)), (amount, txn.id))
            elif roll < 0.88:
                services.transaction_reject(transaction_id=txn.id, actor=actor, reason="demo: duplicate invoice")
        for _, transaction_id in refundable.values():
            services.transaction_reverse(transaction_id=transaction_id, actor=actor, reason="demo: refunded to the customer")
        statuses = Counter(Transaction.objects.values_list("status", flat=True))
        self.stdout.write(f"seeded {count} transactions: " + ", ".join(f"{statuses[s]} {s.replace('_', ' ')}" for s in TransactionStatus.values if statuses[s]))
