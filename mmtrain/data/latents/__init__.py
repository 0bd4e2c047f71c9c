"""Precomputed latent shards for the text-to-image family (docs/latents.md).

    encode.py    python -m mmtrain.data encode-latents: image+caption shards -> latent shards
    manifest.py  latents.json, and the fingerprints that tie latents to their autoencoder
    check.py     what the t2i family refuses before it trains on latent shards
"""
