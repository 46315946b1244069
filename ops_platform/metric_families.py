"""Prometheus metric families, built at scrape time. `prometheus_client` is imported only
when one is built: the definitions never need it."""

from __future__ import annotations


def gauge(name: str, documentation: str, labels: list[str]):
    from prometheus_client.core import GaugeMetricFamily

    return GaugeMetricFamily(name, documentation, labels=labels)


def counter(name: str, documentation: str, labels: list[str]):
    from prometheus_client.core import CounterMetricFamily

    return CounterMetricFamily(name, documentation, labels=labels)
