from certsmith.cli.main import main

raise SystemExit(main())
