"""The ServerApp component: fedlearn's aggregation inside Flower's FedAvg round loop."""

from fedlearn.flower.server_app import app

__all__ = ["app"]
