"""The one place that builds the processing components from settings: budgets, price catalogue,
attribution rules. The embedded runner, the API and the distributed workers all start here."""
from __future__ import annotations

from dataclasses import dataclass

from costwarden.budgets.model import BudgetFile
from costwarden.config import Settings
from costwarden.store import Store, migrate, open_store
from costwarden.streams.attribution import Attributor, default_rules, load_rules
from costwarden.streams.catalogue import PriceCatalogue


def load_budget_file(settings: Settings) -> BudgetFile:
    from costwarden.budgets.loader import load_budgets

    if settings.budgets.budgets_file:
        return load_budgets(settings.budgets.budgets_file, known_channels=set(settings.alerts.channels) or None)
    return BudgetFile(version=1, timezone=settings.budgets.timezone, budgets=[])


def load_catalogue(settings: Settings) -> PriceCatalogue:
    """The price catalogue, charging what it cannot price by `pricing.unpriced` (never free by default)."""
    f = settings.budgets.catalogue_file
    cat = PriceCatalogue.from_yaml(f) if f else PriceCatalogue.default()
    return cat.with_unpriced_policy(settings.pricing.unpriced_policy())


def load_attributor(settings: Settings) -> Attributor:
    f = settings.budgets.rules_file
    return Attributor(load_rules(f) if f else default_rules())


@dataclass
class Core:
    """What every runtime shares: the settings, budgets, catalogue and attribution rules."""

    settings: Settings
    budgets: BudgetFile
    catalogue: PriceCatalogue
    attributor: Attributor

    @classmethod
    def load(cls, settings: Settings, budgets: BudgetFile | None = None) -> "Core":
        return cls(settings, budgets if budgets is not None else load_budget_file(settings),
                   load_catalogue(settings), load_attributor(settings))

    def open_store(self, migrate_schema: bool = False) -> Store:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        store = open_store(s.store.url.get_secret_value(), str(s.data_dir), s.store.database)
        if migrate_schema:
            migrate(store)
        return store


def load_notifier(settings: Settings):
    """The alert notifier: Apprise over the configured channels, else the log."""
    from costwarden.alerts.notifier import AppriseNotifier, LogNotifier

    if settings.alerts.channels:
        return AppriseNotifier(settings.alerts.channels)
    return LogNotifier()
