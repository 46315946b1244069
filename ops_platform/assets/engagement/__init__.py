"""Engagement assets: `stream_rankings` every 10 minutes and `user_trust_scores`
every 30 minutes, each one set-based statement written back to the table the app reads.

- `streams`: `stream_rankings`, the engagement score and dense rank of every live or
  recently ended stream from its `stream_events` (time-decayed), only the difference written.
- `trust`: `user_trust_scores`, every user's trust score 0–100 from `reputation_events`
  (weighted, time-decayed, clamped), written to `users.trust_score` where it moved.
"""

import dagster as dg

from ops_platform.assets._malformed import malformed_rows_checks
from ops_platform.assets.engagement.streams import (
    STREAM_EVENT_WEIGHTS,
    STREAM_SCORE_PRECISION,
    RankingResult,
    StreamRankingsConfig,
    one_ranking_row_per_stream,
    rank_streams,
    stream_rankings,
    stream_ranks_dense_and_unique,
)
from ops_platform.assets.engagement.trust import (
    TRUST_REFRESH_AFTER,
    TRUST_SCORE_PRECISION,
    TrustScoresConfig,
    TrustScoreUpdate,
    trust_scores_updated_for_every_user,
    trust_scores_within_range,
    update_trust_scores,
    user_trust_scores,
)

__all__ = [
    "STREAM_EVENT_WEIGHTS",
    "STREAM_SCORE_PRECISION",
    "TRUST_REFRESH_AFTER",
    "TRUST_SCORE_PRECISION",
    "RankingResult",
    "StreamRankingsConfig",
    "TrustScoreUpdate",
    "TrustScoresConfig",
    "one_ranking_row_per_stream",
    "rank_streams",
    "stream_rankings",
    "stream_ranks_dense_and_unique",
    "trust_scores_updated_for_every_user",
    "trust_scores_within_range",
    "update_trust_scores",
    "user_trust_scores",
]

defs = dg.Definitions(
    assets=[stream_rankings, user_trust_scores],
    asset_checks=[
        stream_ranks_dense_and_unique,
        one_ranking_row_per_stream,
        trust_scores_within_range,
        trust_scores_updated_for_every_user,
        *malformed_rows_checks(stream_rankings, user_trust_scores),
    ],
)
