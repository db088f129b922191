"""The shipped recipes (NAME.toml), installed as the package lstmtext.recipes so that ``--recipe NAME`` finds
them wherever lstmtext is installed (lstmtext.data.recipe_path)."""
