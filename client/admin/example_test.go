package admin_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/eddy-streams/eddy/client/admin"
)

func ExampleDial() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	c, err := admin.Dial(ctx, "127.0.0.1:6066", admin.WithToken(os.Getenv("EDDY_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	st, err := c.Status(ctx)
	switch {
	case errors.Is(err, admin.ErrUnreachable):
		log.Fatalf("is the worker running? %v", err)
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println(st.GetState())

	if _, err := c.Pause(ctx, "enricher"); errors.Is(err, admin.ErrUnauthenticated) {
		log.Fatalf("check the token: %v", err)
	}
}
