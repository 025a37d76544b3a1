"""``python -m lit_clip fit --config ...`` does what ``lit-clip fit --config ...`` does."""
from lit_clip.cli import main

main()
