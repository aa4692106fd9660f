"""Settings for every DelTran process, read from `DELTRAN_*` environment variables.

One object is shared by the CLI, the worker, the API and the dev stack so that
`make up`, the tests and an operator's deployment all read the same names.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from deltran.money import MINOR_UNITS

PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_SANCTIONS_LIST = PACKAGE_DIR / "data" / "sanctions_demo.csv"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DELTRAN_", extra="ignore")

    # Where the local stack keeps its state: Postgres data, Temporal's database,
    # logs and the demo credentials.
    home: Path = Path(".deltran")

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    pg_port: int = 5433

    # When set, these point the worker and API at external servers instead of the
    # ones `make up` starts.
    database_url: str | None = None
    temporal_address: str | None = None
    temporal_namespace: str = "default"
    task_queue: str = "deltran-payments"

    # An unfunded payment expires this long after its obligation was recorded.
    payment_deadline_s: int = Field(default=2 * 24 * 3600, gt=0)
    # One attempt of a payment's step may take this long; a worker that died mid-step
    # is noticed after it, and the step is retried on another worker.
    activity_timeout_s: int = Field(default=30, gt=0)
    # A step that still fails after this many local attempts (about 3 s of backoff at
    # the default) is retried as a regular activity, so ops see its attempts and last
    # error (workflows/payment.py).
    local_step_attempts: int = Field(default=6, ge=1, le=10)
    # New payments run their steps as local activities. A rolling upgrade from a version
    # without them sets this false until every worker runs the new code (an old worker
    # cannot replay a payment that ran local steps); see docs/runbook.md.
    local_steps: bool = True
    # A payment's workflow task, which runs its steps: a worker that died mid-step is
    # noticed after this long, and the step runs again on another worker.
    workflow_task_timeout_s: int = Field(default=10, ge=1, le=120)
    # Temporal's workflow sandbox re-imports each workflow module for every run and
    # evaluates code strings around every payload: a fifth of a busy worker's CPU
    # (docs/capacity.md). Determinism is checked where it can fail a build instead:
    # tests/workflows runs every branch sandboxed and tests/replay replays every
    # recorded history sandboxed. True runs the production worker sandboxed too.
    workflow_sandbox: bool = False

    sanctions_list_path: Path = DEMO_SANCTIONS_LIST
    # Similarity (0-100) at or above which a party name counts as a sanctions hit.
    sanctions_threshold: float = Field(default=88.0, ge=50.0, le=100.0)

    # Largest amount accepted per payment, in the payment's currency.
    max_payment_amount: Decimal = Decimal("1000000000")
    # The currencies DelTran clears: a subset of the one currency table (deltran/money.py
    # MINOR_UNITS). A payment in any other currency is refused at intake (422).
    supported_currencies: tuple[str, ...] = ("AED", "INR", "USD", "EUR")

    # Cap on request bodies (JSON and XML) before anything parses them.
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)

    # Per caller (bank or operator role) and API process: sustained rate and burst.
    rate_limit_per_s: float = Field(default=1000.0, gt=0)
    rate_limit_burst: int = Field(default=2000, ge=1)

    # Clearing: how often each currency's window closes, how long net debtors have to
    # fund after a close before the fallback settles what the fundings cover, and the
    # amount from which a payment settles gross (alone) rather than in a window.
    clearing_interval_s: int = Field(default=60, gt=0)
    window_funding_timeout_s: int = Field(default=600, gt=0)
    gross_thresholds: dict[str, Decimal] = {
        "AED": Decimal("5000000"),
        "INR": Decimal("100000000"),
        "USD": Decimal("1000000"),
        "EUR": Decimal("1000000"),
    }

    # Account monitor: the intraday reconciliation's cadence and the end-of-day run (cron, UTC).
    reconciliation_interval_s: int = Field(default=60, gt=0)
    end_of_day_cron: str = "0 0 * * *"

    # The worker's own /metrics (deltran_ metrics and the Temporal SDK's worker metrics).
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = 9464
    # Activities one worker runs at once. Concurrent mints share one transaction per
    # batch (activities/tokens/batcher.py), so a worker that mints thousands per second
    # needs this in the thousands; the default suits a worker that does everything.
    worker_max_concurrent_activities: int = Field(default=100, gt=0)
    # How long the server holds a workflow's next task for the worker that has it cached
    # before handing it to any worker: after a worker dies, its workflows wait this long.
    # Lower fails over sooner; too low makes a busy live worker lose its cache (a replay
    # per task). The SDK's default.
    worker_sticky_timeout_s: float = Field(default=10.0, gt=0)
    # The cyclic garbage collector's youngest-generation threshold in the worker and the
    # API (deltran/gc_tuning.py); CPython's default is 700.
    gc_gen0_threshold: int = Field(default=50_000, gt=0)

    # Risk score (0-100, stored with each payment): how its factors are weighed.
    risk_velocity_window_s: int = Field(default=3600, gt=0)
    risk_high_risk_corridors: tuple[str, ...] = ()  # e.g. ("AE-IR",): debtor-creditor country pairs

    # Webhooks: a bank's endpoint must be https on a public address, so no webhook can
    # be pointed at DelTran's own network; true (as `make up` and the tests set it)
    # allows http and private or loopback addresses, for a receiver on this machine.
    webhook_allow_private: bool = False
    # Each event is retried with backoff (doubling from the first interval up to the
    # longest) for this long, then marked FAILED; it stays at GET /v1/events.
    webhook_retry_first_s: float = Field(default=1.0, gt=0)
    webhook_retry_longest_s: float = Field(default=600.0, gt=0)
    webhook_delivery_period_s: int = Field(default=24 * 3600, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=60)

    # A camt.054 entry for a payment accepted a moment ago may arrive before the payment's
    # workflow has started (the API starts it just after its 202): the API retries its
    # signal this long, then leaves it to the worker's sweeper, which starts the workflow
    # and signals it.
    camt054_start_wait_s: float = Field(default=5.0, gt=0, le=60)

    # A booked credit that matched nothing this long after it arrived is refunded to the
    # bank the settlement agent named as its debtor agent (an entry that names none is
    # left to ops): time for a payment sent late to be matched by hand first.
    unmatched_refund_after_s: int = Field(default=24 * 3600, gt=0)

    # FX: a debtor agent holds at most this many quotes still usable (unused, unexpired). A
    # locked rate is an option the provider writes for free: a bank must not collect many
    # and use only the one the market moved in its favour.
    fx_max_open_quotes: int = Field(default=20, gt=0)
    # Cross-currency payments accepted (a quote taken by a payment). Off while a rolling
    # upgrade still runs workers that predate them (docs/runbook.md, "Upgrading workers"):
    # such a worker would settle one leg as a payment in one currency.
    fx_payments: bool = True

    # Redemptions: a payout not booked by the settlement agent this long after the request
    # releases the reserved tokens back to the bank.
    redemption_deadline_s: int = Field(default=24 * 3600, gt=0)

    # DelTran's own BIC: the reporter on the pacs.002 status reports it sends.
    bic: str = "DLTRAEAD"

    @field_validator("supported_currencies")
    @classmethod
    def _currencies_in_the_table(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [c for c in value if c not in MINOR_UNITS]
        if unknown or not value or len(set(value)) != len(value):
            raise ValueError(
                f"supported_currencies must be distinct codes of {', '.join(sorted(MINOR_UNITS))};"
                f" got {', '.join(value)}"
            )
        return value

    @property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def credentials_path(self) -> Path:
        return self.resolved_home / "credentials.json"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"postgresql+asyncpg://deltran@127.0.0.1:{self.pg_port}/deltran"

    @property
    def effective_temporal_address(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"

    @property
    def payment_deadline(self) -> timedelta:
        return timedelta(seconds=self.payment_deadline_s)

    @property
    def clearing_window_stale_after_s(self) -> int:
        """How long a healthy schedule can leave a window open: a close is skipped while
        the previous run still waits for its fundings (overlap SKIP), so up to two
        intervals plus the funding timeout. Older, the schedule is paused or not running
        and the liquidity router settles new payments gross instead."""
        return 2 * self.clearing_interval_s + self.window_funding_timeout_s


@lru_cache
def get_settings() -> Settings:
    return Settings()
