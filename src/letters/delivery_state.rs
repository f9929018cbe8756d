//! The delivery state machine of a letter to a practice: its states (the
//! `letter-delivery-state` codes), what can happen to it ([`Event`]), and the one function that
//! says where an event takes it ([`next`]). Pure: no I/O, no clock.
//!
//! Every change of a delivery's state goes through [`next`], so a transition the machine does
//! not have is an error the caller must handle, and a misspelt state does not compile.

use std::fmt;

/// Where a letter's delivery stands: a `letter-delivery-state` code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Waiting for its first or next attempt.
    Queued,
    /// Handed to MESH; no acknowledgement yet.
    Sent,
    /// The practice's system acknowledged receipt (ITK3 20013).
    Received,
    /// The practice's system accepted the letter (ITK3 30001, or a FHIR 2xx).
    Accepted,
    /// The practice's system refused the letter permanently.
    Rejected,
    /// Attempts failed for the whole retry window.
    Dead,
    /// An urgent letter not acknowledged in time; still retried until delivered.
    Escalated,
    /// Not sent: the person's consent no longer allows it.
    Cancelled,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 8] = [
        DeliveryState::Queued,
        DeliveryState::Sent,
        DeliveryState::Received,
        DeliveryState::Accepted,
        DeliveryState::Rejected,
        DeliveryState::Dead,
        DeliveryState::Escalated,
        DeliveryState::Cancelled,
    ];

    /// The `letter-delivery-state` code, as stored and as the API shows it.
    pub fn code(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Sent => "sent",
            DeliveryState::Received => "received",
            DeliveryState::Accepted => "accepted",
            DeliveryState::Rejected => "rejected",
            DeliveryState::Dead => "dead",
            DeliveryState::Escalated => "escalated",
            DeliveryState::Cancelled => "cancelled",
        }
    }

    pub fn from_code(code: &str) -> Option<DeliveryState> {
        DeliveryState::ALL.into_iter().find(|s| s.code() == code)
    }

    /// Whether the worker still sends the letter when it is due: waiting for an attempt, or sent
    /// over MESH and due again if its acknowledgements do not come in time.
    pub fn awaits_attempt(self) -> bool {
        matches!(
            self,
            DeliveryState::Queued
                | DeliveryState::Escalated
                | DeliveryState::Sent
                | DeliveryState::Received
        )
    }

    /// Whether delivery is over: no attempt or answer changes it any more (only a rejected or
    /// dead letter is sent again, by hand).
    pub fn is_final(self) -> bool {
        !self.awaits_attempt()
    }

    /// The FHIR `Communication.status` of a letter in this state.
    pub fn communication_status(self) -> &'static str {
        match self {
            DeliveryState::Queued => "preparation",
            DeliveryState::Sent | DeliveryState::Received | DeliveryState::Escalated => {
                "in-progress"
            }
            DeliveryState::Accepted => "completed",
            DeliveryState::Rejected | DeliveryState::Dead => "not-done",
            DeliveryState::Cancelled => "stopped",
        }
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl serde::Serialize for DeliveryState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

/// What can happen to a letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// An attempt delivered it: the practice's system took it over FHIR (a 2xx).
    Delivered,
    /// An attempt handed it to MESH; the practice's acknowledgements come later.
    SentOverMesh,
    /// The practice's system acknowledged receipt (ITK3 20013).
    AckReceived,
    /// The practice's system accepted it (ITK3 30001).
    AckAccepted,
    /// The practice's system refused it (a negative ITK3 acknowledgement).
    AckRejected,
    /// An attempt was refused for good (a 4xx other than 408/429; MESH refusing the address).
    Refused,
    /// An attempt failed in a way worth trying again (a timeout, a 5xx, a 429, no route yet), or
    /// MESH reported it could not deliver the letter. `escalated`: the letter was escalated
    /// before (a letter escalated while waiting for MESH acknowledgements is `sent` or
    /// `received`, its escalation kept with it), and stays escalated until it is delivered.
    RetryableFailure { escalated: bool },
    /// The retry window ended with the letter still undelivered.
    DeadlinePassed,
    /// An urgent letter was not acknowledged in time. A letter waiting for MESH
    /// acknowledgements keeps waiting (its escalation is recorded beside its state).
    UrgentAckOverdue,
    /// The person's consent no longer allows the letter to go to the practice.
    ConsentWithdrawn,
    /// The service sends a rejected or dead letter again.
    ResentByHand,
}

/// An event the letter's state does not take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {state} letter cannot take {event:?}")]
pub struct InvalidTransition {
    pub state: DeliveryState,
    pub event: Event,
}

/// Where `event` takes a letter in `state`.
pub fn next(state: DeliveryState, event: Event) -> Result<DeliveryState, InvalidTransition> {
    use DeliveryState::*;
    use Event::*;
    let invalid = Err(InvalidTransition { state, event });
    if !state.awaits_attempt() {
        return match (state, event) {
            (Rejected | Dead, ResentByHand) => Ok(Queued),
            _ => invalid,
        };
    }
    match event {
        Delivered | AckAccepted => Ok(Accepted),
        SentOverMesh => Ok(Sent),
        AckReceived => Ok(Received),
        AckRejected | Refused => Ok(Rejected),
        RetryableFailure { escalated } if escalated || state == Escalated => Ok(Escalated),
        RetryableFailure { .. } => Ok(Queued),
        DeadlinePassed => Ok(Dead),
        ConsentWithdrawn => Ok(Cancelled),
        UrgentAckOverdue => match state {
            Queued => Ok(Escalated),
            Sent | Received => Ok(state),
            _ => invalid,
        },
        ResentByHand => invalid,
    }
}

/// What one entry of a letter's delivery log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    /// The practice's system took it (FHIR).
    Delivered,
    /// Handed to MESH.
    Sent,
    /// An ITK3 acknowledgement came back (positive or negative: the detail says which).
    Acknowledged,
    /// Failed; tried again later.
    Retry,
    /// Refused for good.
    Permanent,
    /// Stopped by consent.
    Cancelled,
    /// Undelivered at the end of the retry window.
    Dead,
    /// Sent again by hand.
    Requeued,
}

impl AttemptOutcome {
    pub const ALL: [AttemptOutcome; 8] = [
        AttemptOutcome::Delivered,
        AttemptOutcome::Sent,
        AttemptOutcome::Acknowledged,
        AttemptOutcome::Retry,
        AttemptOutcome::Permanent,
        AttemptOutcome::Cancelled,
        AttemptOutcome::Dead,
        AttemptOutcome::Requeued,
    ];

    /// The code as stored and as the API shows it.
    pub fn code(self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Sent => "sent",
            AttemptOutcome::Acknowledged => "acknowledged",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Permanent => "permanent",
            AttemptOutcome::Cancelled => "cancelled",
            AttemptOutcome::Dead => "dead",
            AttemptOutcome::Requeued => "requeued",
        }
    }

    pub fn from_code(code: &str) -> Option<AttemptOutcome> {
        AttemptOutcome::ALL.into_iter().find(|o| o.code() == code)
    }

    /// What the attempt says of the practice's endpoint: it answered (took the letter, or
    /// refused it for good: it is up), it failed, or nothing (no attempt at the endpoint).
    pub fn endpoint(self) -> Option<EndpointHealth> {
        match self {
            AttemptOutcome::Delivered
            | AttemptOutcome::Sent
            | AttemptOutcome::Acknowledged
            | AttemptOutcome::Permanent => Some(EndpointHealth::Answered),
            AttemptOutcome::Retry => Some(EndpointHealth::Failed),
            AttemptOutcome::Cancelled | AttemptOutcome::Dead | AttemptOutcome::Requeued => None,
        }
    }
}

/// A practice's endpoint as one attempt found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointHealth {
    Answered,
    Failed,
}

impl serde::Serialize for AttemptOutcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::DeliveryState::*;
    use super::Event::*;
    use super::*;

    #[test]
    fn only_an_attempt_at_the_endpoint_says_how_it_is() {
        for outcome in AttemptOutcome::ALL {
            let expected = match outcome {
                AttemptOutcome::Retry => Some(EndpointHealth::Failed),
                AttemptOutcome::Cancelled | AttemptOutcome::Dead | AttemptOutcome::Requeued => None,
                _ => Some(EndpointHealth::Answered),
            };
            assert_eq!(outcome.endpoint(), expected, "{outcome:?}");
        }
    }

    const EVENTS: [Event; 12] = [
        Delivered,
        SentOverMesh,
        AckReceived,
        AckAccepted,
        AckRejected,
        Refused,
        RetryableFailure { escalated: false },
        RetryableFailure { escalated: true },
        DeadlinePassed,
        UrgentAckOverdue,
        ConsentWithdrawn,
        ResentByHand,
    ];

    /// Every transition the machine has, written out; every other pair is invalid.
    const TRANSITIONS: &[(DeliveryState, Event, DeliveryState)] = &[
        (Queued, Delivered, Accepted),
        (Queued, SentOverMesh, Sent),
        (Queued, AckReceived, Received),
        (Queued, AckAccepted, Accepted),
        (Queued, AckRejected, Rejected),
        (Queued, Refused, Rejected),
        (Queued, RetryableFailure { escalated: false }, Queued),
        (Queued, RetryableFailure { escalated: true }, Escalated),
        (Queued, DeadlinePassed, Dead),
        (Queued, UrgentAckOverdue, Escalated),
        (Queued, ConsentWithdrawn, Cancelled),
        (Escalated, Delivered, Accepted),
        (Escalated, SentOverMesh, Sent),
        (Escalated, AckReceived, Received),
        (Escalated, AckAccepted, Accepted),
        (Escalated, AckRejected, Rejected),
        (Escalated, Refused, Rejected),
        (Escalated, RetryableFailure { escalated: false }, Escalated),
        (Escalated, RetryableFailure { escalated: true }, Escalated),
        (Escalated, DeadlinePassed, Dead),
        (Escalated, ConsentWithdrawn, Cancelled),
        (Sent, Delivered, Accepted),
        (Sent, SentOverMesh, Sent),
        (Sent, AckReceived, Received),
        (Sent, AckAccepted, Accepted),
        (Sent, AckRejected, Rejected),
        (Sent, Refused, Rejected),
        (Sent, RetryableFailure { escalated: false }, Queued),
        (Sent, RetryableFailure { escalated: true }, Escalated),
        (Sent, DeadlinePassed, Dead),
        (Sent, UrgentAckOverdue, Sent),
        (Sent, ConsentWithdrawn, Cancelled),
        (Received, Delivered, Accepted),
        (Received, SentOverMesh, Sent),
        (Received, AckReceived, Received),
        (Received, AckAccepted, Accepted),
        (Received, AckRejected, Rejected),
        (Received, Refused, Rejected),
        (Received, RetryableFailure { escalated: false }, Queued),
        (Received, RetryableFailure { escalated: true }, Escalated),
        (Received, DeadlinePassed, Dead),
        (Received, UrgentAckOverdue, Received),
        (Received, ConsentWithdrawn, Cancelled),
        (Rejected, ResentByHand, Queued),
        (Dead, ResentByHand, Queued),
    ];

    #[test]
    fn every_state_and_event_goes_where_the_table_says() {
        let mut valid = 0;
        for state in DeliveryState::ALL {
            for event in EVENTS {
                let expected = TRANSITIONS
                    .iter()
                    .find(|(s, e, _)| *s == state && *e == event)
                    .map(|(_, _, to)| *to);
                match (next(state, event), expected) {
                    (Ok(to), Some(want)) => {
                        assert_eq!(to, want, "{state} × {event:?}");
                        valid += 1;
                    }
                    (Err(e), None) => assert_eq!(e, InvalidTransition { state, event }),
                    (got, want) => panic!("{state} × {event:?}: got {got:?}, want {want:?}"),
                }
            }
        }
        assert_eq!(valid, TRANSITIONS.len(), "the table lists no pair twice");
    }

    #[test]
    fn final_states_stay_final() {
        for state in DeliveryState::ALL.into_iter().filter(|s| s.is_final()) {
            for event in EVENTS {
                if let Ok(to) = next(state, event) {
                    assert_eq!(
                        (state, event, to),
                        (state, ResentByHand, Queued),
                        "only a resend by hand moves a finished letter"
                    );
                }
            }
            // Accepted and cancelled letters are never sent again, not even by hand.
            if matches!(state, Accepted | Cancelled) {
                assert!(next(state, ResentByHand).is_err(), "{state}");
            }
        }
        assert_eq!(
            DeliveryState::ALL.map(DeliveryState::is_final),
            [false, false, false, true, true, true, false, true]
        );
    }

    #[test]
    fn every_state_awaiting_an_attempt_can_end_every_way() {
        for state in DeliveryState::ALL
            .into_iter()
            .filter(|s| s.awaits_attempt())
        {
            for (event, end) in [
                (Delivered, Accepted),
                (Refused, Rejected),
                (DeadlinePassed, Dead),
                (ConsentWithdrawn, Cancelled),
            ] {
                assert_eq!(next(state, event), Ok(end), "{state} × {event:?}");
            }
        }
    }

    #[test]
    fn codes_are_the_code_systems_and_round_trip() {
        let system = crate::fhir::terminology::code_system("letter-delivery-state");
        let mut codes: Vec<&str> = system.codes().collect();
        codes.sort_unstable();
        let mut ours: Vec<&str> = DeliveryState::ALL.map(DeliveryState::code).to_vec();
        ours.sort_unstable();
        assert_eq!(codes, ours);
        for state in DeliveryState::ALL {
            assert_eq!(DeliveryState::from_code(state.code()), Some(state));
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::json!(state.code())
            );
        }
        assert_eq!(DeliveryState::from_code("Queued"), None);
        assert_eq!(DeliveryState::from_code("lost"), None);
        for outcome in AttemptOutcome::ALL {
            assert_eq!(AttemptOutcome::from_code(outcome.code()), Some(outcome));
        }
        assert_eq!(AttemptOutcome::from_code("delivred"), None);
    }

    #[test]
    fn states_map_to_communication_status() {
        assert_eq!(
            DeliveryState::ALL.map(DeliveryState::communication_status),
            [
                "preparation",
                "in-progress",
                "in-progress",
                "completed",
                "not-done",
                "not-done",
                "in-progress",
                "stopped"
            ]
        );
    }
}
