"""Generation from an exported t2i bundle, every image stamped with its provenance.

    from mmtrain.generate.bundle import load_bundle
    from mmtrain.generate.images import generate
    bundle = load_bundle("runs/demo/export/t2i")
    report = generate(bundle, "a red shape", "out/", seed=7, n=4)

CLI: python -m mmtrain.generate --bundle DIR --prompt TEXT --out DIR (docs/t2i.md
"Generating from a bundle").
"""
