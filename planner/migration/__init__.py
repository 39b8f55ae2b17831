"""Migration: the least-traffic move schedule from a running replica plan to a new one (DESIGN §5.5)."""

from planner.migration.plan import LayerMigration, Migration, link_seconds, plan_migration

__all__ = ["LayerMigration", "Migration", "plan_migration", "link_seconds"]
