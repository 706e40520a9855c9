"""Helpers the tests share, none of them a test: model factories (`factories`), model folders written and edited on
disk (`modelfiles`), live server processes (`live`), pictures decoded and read (`pictures`), the Prometheus text
format parsed (`prometheus`), hand-worked reference formulas (`reference`) and zennit as an oracle
(`zennit_oracle`)."""
