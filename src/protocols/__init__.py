"""Benchmarks' own scoring protocols, reproduced (ImgEdit, RISEBench, KRIS-Bench): see ``base.py``."""
