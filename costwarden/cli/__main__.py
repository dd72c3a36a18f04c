from costwarden.cli import main

main()
