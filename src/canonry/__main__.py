from canonry.cli.launcher import main

main()
