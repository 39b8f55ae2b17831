"""Test-session hooks shared by every test file."""


def pytest_collection_modifyitems(config, items):
    """Run the slow lane's tests first, in their collected order, then the rest.

    The ``slow`` tests start processes and take seconds to minutes each; begun first, they run on both
    xdist workers while the many short tests fill in behind them, so the workers finish together
    instead of one waiting on a long test picked up at the end (longest-first scheduling). The order
    inside each group is kept, and no test depends on another's order (xdist spreads them anyway).
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: slow first
