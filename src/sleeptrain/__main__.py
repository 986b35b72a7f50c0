from sleeptrain.cli import main

raise SystemExit(main())
