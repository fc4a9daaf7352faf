from acqkit.cli import main

main()
