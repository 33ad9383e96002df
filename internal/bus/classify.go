package bus

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
)

// Classify puts err into one of the fixed error classes counted on hot paths.
func Classify(err error) ErrorClass {
	if err == nil {
		return ClassNone
	}
	var se *StatusError
	if errors.As(err, &se) {
		switch {
		case se.Status >= 500:
			return Class5xx
		case se.Status >= 400:
			return Class4xx
		}
		return ClassProtocol
	}
	switch {
	case errors.Is(err, ErrProtocol):
		return ClassProtocol
	case errors.Is(err, ErrRefused), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, ErrUnreachable):
		return ClassRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return ClassReset
	case errors.Is(err, ErrUnknownOutcome), errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return ClassTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ClassTimeout
	}
	return ClassOther
}
