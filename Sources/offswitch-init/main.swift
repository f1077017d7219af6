import OffswitchInit

// PID 1 of every sandbox. All logic lives in OffswitchInit.
InitProcess.main()
