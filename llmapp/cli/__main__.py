"""``python -m llmapp.cli``: the ``llmapp`` command, runnable as a module (e.g. under accelerate).

    accelerate launch -m llmapp.cli train --data corpus.txt --preset shakespeare-char --out runs/big
"""

from llmapp.cli import main

main()
