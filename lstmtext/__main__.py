from lstmtext.cli import main

# the guard keeps worker processes (spawned to tokenize a large corpus) from running the command again
if __name__ == "__main__":
    main()
