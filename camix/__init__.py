"""camix: Context-Aware Mixup and its baselines for domain-adaptive semantic segmentation."""

__version__ = "0.1.0"
