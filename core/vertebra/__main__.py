from vertebra.cli import main

raise SystemExit(main())
