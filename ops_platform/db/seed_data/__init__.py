"""The synthetic data set: one generator per table (or group of related tables).

Every generator builds whole columns with numpy from its own random stream (derived from
the seed and the table name), so the same seed gives the same data and one table's
changes do not shift another's. Times are seconds relative to `now` (UTC), so a seeded
database always has rows on both sides of every expiry and retention boundary the jobs
look at. Each generator pins its boundary cases on its first rows (`pick`), so even a
tiny data set has every case; the rest is drawn with realistic proportions.

Row counts scale from the number of users (`SIZES`).
"""

from ops_platform.db.seed_data._base import SIZES, Context, size
from ops_platform.db.seed_data.accounts import (
    coin_transactions,
    og_tiers,
    secrets,
    sessions,
    tokens,
    users,
)
from ops_platform.db.seed_data.engagement import (
    festivals,
    reputation_events,
    stream_events,
    stream_rankings,
    streams,
    thrones,
)
from ops_platform.db.seed_data.games import games
from ops_platform.db.seed_data.learning import learning
from ops_platform.db.seed_data.messaging import notifications, realtime_events
from ops_platform.db.seed_data.payments import payments
from ops_platform.db.seed_data.projects import projects
from ops_platform.db.seed_data.security import security_alerts, stored_files, webhook_events

# In dependency order: users first (others pick users who had signed up by then), streams
# before their events, rankings and thrones.
GENERATORS = (
    users,
    og_tiers,
    sessions,
    tokens,
    secrets,
    coin_transactions,
    payments,
    projects,
    notifications,
    realtime_events,
    streams,
    stream_events,
    stream_rankings,
    reputation_events,
    thrones,
    festivals,
    games,
    learning,
    stored_files,
    webhook_events,
    security_alerts,
)

__all__ = ["GENERATORS", "SIZES", "Context", "size"]
