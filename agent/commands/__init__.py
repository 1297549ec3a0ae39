"""One module per subcommand of `tailnet-agent`; cli.py parses flags and calls these."""
