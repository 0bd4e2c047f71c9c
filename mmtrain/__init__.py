"""mmtrain: config-driven training of multi-modal generative models."""
__version__ = "0.1.0"
