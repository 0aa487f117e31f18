from rfalint.cli import main

main()
