"""Published numbers for the 2-D protocol, quoted as context only: other architectures, other
optimizers and training lengths. They are never compared with ours in a test or a ranking."""

VEEGAN = """VEEGAN (Srivastava et al. 2017), Table 1: 2,500 samples, mean of 5 runs.

| model | ring8 modes | ring8 % HQ | grid25 modes | grid25 % HQ |
|---|---|---|---|---|
| GAN | 1 | 99.3 | 3.3 | 0.5 |
| ALI | 2.8 | 0.13 | 15.8 | 1.6 |
| Unrolled GAN | 7.6 | 35.6 | 23.6 | 16 |
| VEEGAN | 8 | 52.9 | 24.6 | 40 |"""

PACGAN = """PacGAN (Lin et al. 2018), Table 1: 10 trials, mean +- standard error.

| model | ring8 modes | ring8 % HQ | ring8 reverse KL | grid25 modes | grid25 % HQ | grid25 reverse KL |
|---|---|---|---|---|---|---|
| GAN | 6.3 +- 0.5 | 98.2 +- 0.2 | 0.45 +- 0.09 | 17.3 +- 0.8 | 94.8 +- 0.7 | 0.70 +- 0.07 |
| ALI | 6.6 +- 0.3 | 97.6 +- 0.4 | 0.36 +- 0.04 | 24.1 +- 0.4 | 95.7 +- 0.6 | 0.14 +- 0.03 |
| PacGAN2 | 7.9 +- 0.1 | 95.6 +- 2.0 | 0.07 +- 0.03 | 23.8 +- 0.7 | 91.3 +- 0.8 | 0.13 +- 0.04 |
| PacGAN3 | 7.8 +- 0.1 | 97.7 +- 0.3 | 0.10 +- 0.02 | 24.6 +- 0.4 | 94.2 +- 0.4 | 0.06 +- 0.02 |
| PacGAN4 | 7.8 +- 0.1 | 95.9 +- 1.4 | 0.07 +- 0.02 | 24.8 +- 0.2 | 93.6 +- 0.6 | 0.04 +- 0.01 |"""

CONTEXT = f"""## Context: published numbers (other architectures, not ours)

These come from other papers with their own generators, discriminators, optimizers and training
lengths. The two "GAN" rows below disagree enormously on the same nominal task for exactly that
reason: read them as the range of what is possible, and compare methods only against our own
`none` baseline above.

{VEEGAN}

{PACGAN}
"""
