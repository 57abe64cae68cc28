"""The ClientApp component: fedlearn's local training on this SuperNode's own partition."""

from fedlearn.flower.client_app import app

__all__ = ["app"]
